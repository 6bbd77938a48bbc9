/** A start that cannot succeed as configured (store unusable, port taken): one line for the operator, no stack. */
export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}
