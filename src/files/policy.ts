// Stasis's own file rules (docs/files.md), written as plugins on the same interface
// users get: the default rules, then the ckptfiles rules (--ckpt-files, --no-ckpt-files,
// --file-rules), then any --plugin.
import type { FilePolicyOptions } from '../image/schema.js';
import type { FileDecision, OpenFile, StasisPlugin } from './plugin.js';
import { compileRule, exemptMatcher, matchRule, restartPathFor } from './rules.js';

/** The default rules, with --checkpoint-open-files and --allow-file-overwrite. */
export function defaultRules(opts: Pick<FilePolicyOptions, 'checkpointOpenFiles' | 'allowFileOverwrite'>): StasisPlugin {
  const differ = opts.allowFileOverwrite ? 'replace' : 'refuse';
  return {
    name: 'stasis:default-rules',
    decideFile(f: OpenFile): FileDecision {
      // Nothing else keeps an unlinked file's bytes: it is saved whatever its mode.
      if (f.deleted) return { treatment: 'save', reason: 'deleted while open', onDiffer: 'replace' };
      if (opts.checkpointOpenFiles) return { treatment: 'save', reason: '--checkpoint-open-files', onDiffer: differ };
      if (!f.writable) return { treatment: 'reopen', reason: 'read-only', onDiffer: differ };
      // A database: the program's memory refers to what it wrote, so the file must come back
      // as it was. A differing file at restart is replaced, and kept as a backup.
      // What the program did decides; where its offsets are only when it did nothing yet.
      if (f.written === 'overwrite') return { treatment: 'save', reason: 'database (observed: it wrote over existing bytes or truncated)', onDiffer: 'replace' };
      if (f.written === 'append') return { treatment: 'log', reason: 'log (observed: it only appended)', onDiffer: differ };
      if (f.append) return { treatment: 'log', reason: 'log (offset rule, no write observed: append mode)', onDiffer: differ };
      if (f.atEnd) return { treatment: 'log', reason: 'log (offset rule, no write observed: writable, offset at end)', onDiffer: differ };
      return { treatment: 'save', reason: 'database (offset rule, no write observed: writable, offset before end)', onDiffer: 'replace' };
    },
  };
}

/** The ckptfiles rules: the first rule matching a file's host path decides it. */
export function ckptFilesRules(opts: Pick<FilePolicyOptions, 'rules' | 'allowFileOverwrite'>): StasisPlugin {
  const rules = opts.rules.map(compileRule);
  return {
    name: 'stasis:ckpt-files',
    decideFile(f: OpenFile, proposed: FileDecision): FileDecision | undefined {
      const rule = matchRule(rules, f.path);
      if (rule === undefined) return undefined;
      const reason = `${rule.source}: ${rule.action} ${rule.pattern}`;
      const restartPath = restartPathFor(rule, f.path);
      const d: FileDecision = rule.action === 'save'
        // A file the default rules save already (a database) keeps their "replace" at restart.
        ? { treatment: 'save', reason, onDiffer: proposed.treatment === 'save' || opts.allowFileOverwrite ? 'replace' : 'refuse' }
        : rule.action === 'log'
          ? { ...proposed, treatment: 'log', reason }
          // skip: not saved; an unlinked file cannot be reopened, so it stays saved.
          : f.deleted ? proposed : { ...proposed, treatment: 'reopen', reason };
      return restartPath === undefined ? d : { ...d, restartPath };
    },
  };
}

/** --rollback-exempt (and a rules file's exempt lines): paths a restart leaves as they are. */
export function rollbackExempt(patterns: readonly string[]): StasisPlugin {
  const exemptOf = exemptMatcher(patterns);
  return {
    name: 'stasis:rollback-exempt',
    decideRollback(p) {
      const by = exemptOf(p.path);
      return by === undefined ? undefined : { rollback: false, reason: `--rollback-exempt ${by}` };
    },
  };
}

/** The built-in policy plugins for a launch's options, in order. */
export function builtinPolicy(opts: FilePolicyOptions): StasisPlugin[] {
  const out = [defaultRules(opts)];
  if (opts.rules.length > 0) out.push(ckptFilesRules(opts));
  if ((opts.rollbackExempt ?? []).length > 0) out.push(rollbackExempt(opts.rollbackExempt!));
  return out;
}
