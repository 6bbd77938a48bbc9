// `node --import <this>`: records the packages the process imports (see import-hooks.ts).
import { register } from 'node:module';

register(new URL('./import-hooks.js', import.meta.url));
