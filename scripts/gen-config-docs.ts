/** Writes docs/config.md from the config schema (src/config.ts). */
import { writeFileSync } from 'node:fs';
import { configDocs } from '../src/config-docs.ts';

writeFileSync(new URL('../docs/config.md', import.meta.url), configDocs());
