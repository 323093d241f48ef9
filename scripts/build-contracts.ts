/**
 * `node --import ./scripts/register.ts scripts/build-contracts.ts`: compiles contracts/ (test-only contracts
 * excluded) and writes src/chain/artifacts.ts, which is committed so the app gets typed ABIs without solc.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { compileContracts, renderArtifacts, repoRoot } from '../src/chain/compile.ts';

const contracts = compileContracts();
const path = join(repoRoot, 'src/chain/artifacts.ts');
writeFileSync(path, renderArtifacts(contracts));
for (const [name, c] of Object.entries(contracts)) {
  console.log(
    `${name.padEnd(18)} runtime ${String((c.deployedBytecode.length - 2) / 2).padStart(6)} bytes (limit 24576)`,
  );
}
console.log(`wrote ${path}`);
