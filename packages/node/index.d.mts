// Types of the ESM entry: the same as the CommonJS entry's.
export * from './index.js';
