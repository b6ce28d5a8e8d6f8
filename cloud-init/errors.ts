// Typed errors for bootstrap data that cannot be carried out. Each message says what is wrong and
// what to do; none carries file contents (bootstrap data holds keys and tokens).

export class BootstrapDataError extends Error {
  override name = 'BootstrapDataError';
}

/** The payload is not cloud-config (ignition, MIME multipart, a shell script, ...). */
export class UnsupportedFormat extends BootstrapDataError {
  override name = 'UnsupportedFormat';
  readonly format: string;
  constructor(format: string, message: string) {
    super(message);
    this.format = format;
  }
}

/** A jinja construct the provider does not support, or a variable it does not supply. */
export class TemplateError extends BootstrapDataError {
  override name = 'TemplateError';
  readonly line: number;
  constructor(line: number, message: string) {
    super(`line ${line}: ${message}`);
    this.line = line;
  }
}

/** The cloud-config is malformed at a field; `path` names it, e.g. write_files[2].permissions. */
export class InvalidCloudConfig extends BootstrapDataError {
  override name = 'InvalidCloudConfig';
  readonly path: string;
  constructor(path: string, message: string) {
    super(`${path}: ${message}`);
    this.path = path;
  }
}

/** A cloud-config module the provider cannot carry out without touching disks it does not own. */
export class UnsupportedModule extends BootstrapDataError {
  override name = 'UnsupportedModule';
  readonly module: string;
  constructor(module: string, message: string) {
    super(message);
    this.module = module;
  }
}
