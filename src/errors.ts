/**
 * The one root of Tessera's errors (lowest layer: imports nothing). Every error class in src/ extends it, so a
 * caller at any layer can tell "ours, with a reason it can act on" from a bug or a library's error, and can
 * branch on `code` — a short kebab-case string that stays the same across releases and minification — rather
 * than on message text. `name` is the concrete class's name (the browser build keeps class names), which is
 * what logs and the app's advice tables read.
 */
export class TesseraError extends Error {
  /** Stable kebab-case reason; a family fixes its codes (see each family's base class). */
  readonly code: string;
  constructor(code: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}
