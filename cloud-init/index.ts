// The cloud-init interpreter: bootstrap data in, one idempotent POSIX sh script out. No I/O.
export { render, type RenderOptions, type RenderResult, type Step } from './render.ts';
export { parseProgressLine, type ProgressEvent } from './progress.ts';
export { stepsRunAgain, type StepRerun } from './journal.ts';
export { parseBootstrapData, detectFormat, type CloudConfig } from './parse.ts';
export { templateVars, type MetaData } from './metadata.ts';
export { shQuote } from '../common/quote.ts';
export {
  BootstrapDataError,
  InvalidCloudConfig,
  TemplateError,
  UnsupportedFormat,
  UnsupportedModule,
} from './errors.ts';
