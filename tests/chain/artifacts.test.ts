import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileContracts, contractSources, renderArtifacts, repoRoot } from '../../src/chain/compile.ts';

/** The committed src/chain/artifacts.ts must be what contracts/ compiles to now. */
describe('contract artifacts', () => {
  it('are fresh: recompiling contracts/ reproduces src/chain/artifacts.ts byte for byte', () => {
    const compiled = compileContracts();
    expect(Object.keys(compiled).sort()).toEqual([
      'EpochDistributor',
      'InferenceEscrow',
      'ModelRegistry',
      'RevenueVault',
      'ShareToken',
      'TestToken',
    ]);
    const committed = readFileSync(join(repoRoot, 'src/chain/artifacts.ts'), 'utf8');
    // On mismatch: node --import ./scripts/register.ts scripts/build-contracts.ts
    expect(
      committed === renderArtifacts(compiled),
      'src/chain/artifacts.ts is stale: run scripts/build-contracts.ts',
    ).toBe(true);
    // EIP-170: every contract deploys on any EVM chain without raised size limits.
    for (const [name, c] of Object.entries(compiled))
      expect((c.deployedBytecode.length - 2) / 2, name).toBeLessThan(24_576);
  });

  it('leaves test-only contracts out unless asked, and reports solc errors clearly', () => {
    expect(contractSources()).not.toContain('contracts/test/Reentrant.sol');
    expect(contractSources({ tests: true })).toContain('contracts/test/Reentrant.sol');
    expect(() => compileContracts(['contracts/does-not-exist.sol'])).toThrow(/ENOENT|no such file/);
  });
});
