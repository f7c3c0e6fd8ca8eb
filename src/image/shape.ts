// Declared shapes of JSON data: one declaration both checks a parsed value and gives its
// TypeScript type (schema.ts uses it for the image manifest). Hand-written rather than a
// validation library: importing valibot took ~7 ms more than these shapes (schema included),
// at every restart and inspect.
// Fields an object shape does not name are allowed (older readers of newer images).

type Step = string | number;

/** A value that does not fit its shape: where, what was expected there, what was found. */
export class ShapeError extends Error {
  constructor(readonly expected: string, readonly found: unknown, readonly at: Step[] = []) {
    super();
    this.name = 'ShapeError';
    this.message = this.text();
  }

  /** Where, from the top: "snapshot.files[2].copy.size". */
  get path(): string {
    return this.at.map((s, i) => (typeof s === 'number' ? `[${s}]` : i === 0 ? s : `.${s}`)).join('');
  }

  /** This error, one step further down from where the caller checks. */
  within(step: Step): this {
    this.at.unshift(step);
    this.message = this.text();
    return this;
  }

  private text(): string {
    return `${this.path || 'the top level'}: expected ${this.expected}, got ${describe(this.found)}`;
  }
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (v !== null && typeof v === 'object') return 'an object';
  const s = typeof v === 'string' ? JSON.stringify(v) : String(v);
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}

/** Throws the ShapeError for `found`, `at` steps below the value being checked. */
export function fail(expected: string, found: unknown, ...at: Step[]): never {
  throw new ShapeError(expected, found, at);
}

// Paths are built only for a value that does not fit: each container adds its step to the
// error on the way out. array() and object() keep their loops free of helper calls (one try
// around the loop, tests inline): with a helper call per field, the first check of a
// 1024-chunk manifest (still unoptimized code) took ~5 ms instead of ~1 ms.

/** Checks the part `v` of a value, `step` below it. */
export function checkAt(s: Shape<unknown>, v: unknown, step: Step): void {
  try {
    s.check(v);
  } catch (e) {
    throw e instanceof ShapeError ? e.within(step) : e;
  }
}

export interface Shape<T> {
  /** Throws a ShapeError at the first part of `value` that does not fit. */
  check(value: unknown): void;
  /** Type only: what a checked value is. */
  readonly type?: T;
}

export type Infer<S> = S extends Shape<infer T> ? T : never;

/** Marks an object field that may be absent. */
export interface Optional<T> extends Shape<T> {
  readonly optional: true;
}

/** A value `ok` accepts, described by `expected` ("a non-negative integer"). */
export const leaf = <T>(expected: string, ok: (v: unknown) => boolean): Shape<T> => ({
  check: (v) => { if (!ok(v)) fail(expected, v); },
});

export const string = leaf<string>('a string', (v) => typeof v === 'string');
export const boolean = leaf<boolean>('true or false', (v) => typeof v === 'boolean');
export const number = leaf<number>('a number', (v) => typeof v === 'number' && Number.isFinite(v));
export const uint = leaf<number>('a non-negative integer', (v) => Number.isSafeInteger(v) && (v as number) >= 0);
export const int = leaf<number>('an integer', (v) => Number.isSafeInteger(v));

export function match(re: RegExp, expected: string): Shape<string> {
  return leaf(expected, (v) => typeof v === 'string' && re.test(v));
}

/** One of the given JSON values. */
export function oneOf<const V extends readonly (string | number | boolean | null)[]>(...values: V): Shape<V[number]> {
  return leaf(values.length === 1 ? JSON.stringify(values[0]) : `one of ${values.map((v) => JSON.stringify(v)).join(', ')}`, (v) => values.includes(v as V[number]));
}

export function nullable<T>(s: Shape<T>): Shape<T | null> {
  return { check: (v) => { if (v !== null) s.check(v); } };
}

export function optional<T>(s: Shape<T>): Optional<T> {
  return { optional: true, check: (v) => { if (v !== undefined) s.check(v); } };
}

export function array<T>(item: Shape<T>): Shape<T[]> {
  return {
    check: (v) => {
      if (!Array.isArray(v)) fail('an array', v);
      let i = 0;
      try {
        for (; i < v.length; i++) item.check(v[i]);
      } catch (e) {
        throw e instanceof ShapeError ? e.within(i) : e;
      }
    },
  };
}

export function tuple<A, B>(a: Shape<A>, b: Shape<B>): Shape<[A, B]> {
  return {
    check: (v) => {
      if (!Array.isArray(v) || v.length !== 2) fail('an array of 2', v);
      checkAt(a, v[0], 0);
      checkAt(b, v[1], 1);
    },
  };
}

type Fields = Record<string, Shape<unknown>>;
type Flat<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOf<F extends Fields> = Flat<
  { -readonly [K in keyof F as F[K] extends Optional<unknown> ? never : K]: Infer<F[K]> }
  & { -readonly [K in keyof F as F[K] extends Optional<unknown> ? K : never]?: Infer<F[K]> }
>;

export function object<F extends Fields>(fields: F): Shape<ObjectOf<F>> {
  const keys = Object.keys(fields);
  const shapes = keys.map((k) => fields[k]!);
  return {
    check: (v) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('an object', v);
      let i = 0;
      try {
        for (; i < keys.length; i++) shapes[i]!.check((v as Record<string, unknown>)[keys[i]!]);
      } catch (e) {
        throw e instanceof ShapeError ? e.within(keys[i]!) : e;
      }
    },
  };
}

/** Objects told apart by the field `key`; each case's shape names that field's value too. */
export function variant<K extends string, C extends Record<string, Shape<unknown>>>(key: K, cases: C): Shape<Infer<C[keyof C]>> {
  const tags = Object.keys(cases);
  const expected = `one of ${tags.map((t) => JSON.stringify(t)).join(', ')}`;
  return {
    check: (v) => {
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('an object', v);
      const tag = (v as Record<string, unknown>)[key];
      if (typeof tag !== 'string' || !tags.includes(tag)) fail(expected, tag, key);
      cases[tag]!.check(v);
    },
  };
}

/** `s` with further checks: `test` sees a value that fits `s` and calls fail() if it is wrong. */
export function refine<T>(s: Shape<T>, test: (v: T) => void): Shape<T> {
  return { check: (v) => { s.check(v); test(v as T); } };
}

type Same<A, B> = (<G>() => G extends A ? 1 : 2) extends (<G>() => G extends B ? 1 : 2) ? true : false;

/**
 * `s` as the shape of the existing type T: tsc fails here unless s describes exactly T, so
 * the declaration follows T when T changes.
 */
export function declared<T>() {
  return <S extends Shape<unknown>>(s: S & (Same<Infer<S>, T> extends true ? unknown : { differsFrom: T })): Shape<T> => s as Shape<T>;
}
