// A small argument parser for `stasis SUBCOMMAND [options] [operands]`. Options stop at the
// first operand (the module), so everything after it belongs to the program, as with `env`.
import { StasisError } from '../errors.js';

export interface OptionSpec {
  /** Takes a value (`--dir X` or `--dir=X`). */
  value?: boolean;
  /** May be given more than once; values collect into an array. */
  repeat?: boolean;
}

export interface Parsed {
  options: Map<string, string[]>;
  /** Every option in the order given (where order between options matters, as for rules). */
  sequence: [string, string][];
  operands: string[];
}

/**
 * Parses options and operands. With `interspersed`, options may also follow operands (as for
 * `stasis status NAME --json`); without, the first operand ends the options (`run`, `launch`).
 */
export function parseArgs(command: string, argv: string[], specs: Record<string, OptionSpec>, interspersed = false): Parsed {
  const options = new Map<string, string[]>();
  const sequence: [string, string][] = [];
  const operands: string[] = [];
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      i++;
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (!interspersed) break;
      operands.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const spec = specs[name];
    if (spec === undefined) {
      throw new StasisError('USAGE', `stasis ${command}: unknown option ${name}; see 'stasis ${command} --help'`);
    }
    let value = '';
    if (spec.value) {
      if (eq > 0) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i]!;
      else throw new StasisError('USAGE', `stasis ${command}: option ${name} needs a value`);
    } else if (eq > 0) {
      throw new StasisError('USAGE', `stasis ${command}: option ${name} takes no value`);
    }
    const seen = options.get(name);
    if (seen && !spec.repeat) throw new StasisError('USAGE', `stasis ${command}: option ${name} given twice`);
    options.set(name, [...(seen ?? []), value]);
    sequence.push([name, value]);
  }
  return { options, sequence, operands: [...operands, ...argv.slice(i)] };
}
