/**
 * What every Tessera command line shares: a commander program whose usage errors (unknown option, bad value,
 * missing argument) print one line on stderr and exit with code 2, the way a shell expects, instead of a stack
 * trace; and the value parsers, so "must be a positive integer" reads the same in every CLI.
 */
import { Command, InvalidArgumentError } from 'commander';

/** Exit code for a command line that could not be understood (as getopt-based tools use). */
export const USAGE_EXIT = 2;

export interface CliSpec {
  /** Short name that prefixes error lines, e.g. 'worker'. */
  name: string;
  /** How it is run, for the usage line, e.g. 'npm run worker -- [options]'. */
  usage: string;
  description: string;
  /** Text after the options list: environment variables, examples. */
  after?: string;
}

export function cli(spec: CliSpec): Command {
  const program = new Command(spec.name)
    .description(spec.description)
    .helpOption('-h, --help', 'show this help and exit')
    .configureHelp({ commandUsage: () => spec.usage, showGlobalOptions: false })
    .configureOutput({
      // Commander's messages start with "error: " and may span lines (suggestions); one line reads best in logs.
      outputError: (text, write) =>
        write(
          `${spec.name}: ${text
            .replace(/^error: /, '')
            .replace(/\s*\n\s*/g, ' ')
            .trim()} (--help lists the options)\n`,
        ),
    })
    // Help and version exit 0; every other way out of the parser is a usage error.
    .exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : USAGE_EXIT));
  if (spec.after) program.addHelpText('after', `\n${spec.after.trimEnd()}`);
  return program;
}

/** Reports a usage problem found after parsing (options that contradict each other) like a parse error. */
export function usageError(program: Command, message: string): never {
  program.error(`error: ${message}`, { exitCode: USAGE_EXIT });
  // program.error exits through exitOverride; this only satisfies the type checker.
  process.exit(USAGE_EXIT);
}

/** An integer ≥ min (a count, a step, a port offset). */
export function intAtLeast(min: number): (raw: string) => number {
  return (raw) => {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isSafeInteger(n) || n < min)
      throw new InvalidArgumentError(`Must be an integer ≥ ${min}.`);
    return n;
  };
}

export const positiveInt = intAtLeast(1);
export const nonNegativeInt = intAtLeast(0);

/** A TCP port, 0 meaning "any free one". */
export function port(raw: string): number {
  const n = nonNegativeInt(raw);
  if (n > 65535) throw new InvalidArgumentError('Must be a port number (0–65535).');
  return n;
}

/** A finite number ≥ 0 (learning rate, decay, clip). */
export function nonNegativeNumber(raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('Must be a number ≥ 0.');
  return n;
}

/** A share in [0, 1]. */
export function share(raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !(n >= 0 && n <= 1)) throw new InvalidArgumentError('Must be a number in [0, 1].');
  return n;
}

/** An http(s) URL, kept as written (the clients append their paths to it). */
export function httpUrl(raw: string): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new InvalidArgumentError('Must be a URL such as http://127.0.0.1:8787.');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidArgumentError('Must be an http(s) URL.');
  return raw;
}

/** A non-empty string (an id, a path). */
export function nonEmpty(raw: string): string {
  if (raw.trim() === '') throw new InvalidArgumentError('Must not be empty.');
  return raw;
}

/** A finite number > 0 (a time-budget multiplier). */
export function positiveNumber(raw: string): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('Must be a number > 0.');
  return n;
}

/** A regular expression, checked here so a typo is a usage error rather than a crash mid-run; kept as text. */
export function regExpSource(raw: string): string {
  try {
    new RegExp(raw);
  } catch (e) {
    throw new InvalidArgumentError(`Must be a regular expression (${(e as Error).message}).`);
  }
  return raw;
}

/** A comma-separated list whose items are all among `choices`, e.g. --parts=matmul,attention. */
export function listOf<T extends string>(choices: readonly T[]): (raw: string) => T[] {
  return (raw) => {
    const items = raw.split(',').map((s) => s.trim());
    const bad = items.filter((s) => !choices.includes(s as T));
    if (bad.length || items.length === 0)
      throw new InvalidArgumentError(`Must be a comma-separated list of ${choices.join(', ')}.`);
    return items as T[];
  };
}
