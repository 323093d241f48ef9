// `node --import ./scripts/register.ts file.ts`: lets Node (≥ 22.18, type stripping) load WGSL the way Vite does.
import { register } from 'node:module';
register('./wgsl-hooks.ts', import.meta.url);
