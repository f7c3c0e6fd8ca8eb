// An example Stasis plugin (docs/plugins.md): load it with
//   stasis launch --plugin examples/plugins/audit.mjs ...   (and the same at restart)
//
// - Files under a directory named "cache" are never saved: the program rebuilds them.
// - SQLite-style databases (*.sqlite) are always saved, even when opened read-only.
// - Every event is appended as one JSON line to $STASIS_AUDIT_LOG, when it is set.
import { appendFileSync } from 'node:fs';

function audit(event, data) {
  const log = process.env.STASIS_AUDIT_LOG;
  if (log) appendFileSync(log, JSON.stringify({ event, ...data }) + '\n');
}

/** @type {import('stasis').StasisPlugin} */
export default {
  name: 'audit',
  decideFile(file, proposed) {
    audit('decideFile', { path: file.path, proposed: proposed.treatment });
    if (file.path.split('/').includes('cache')) {
      return { ...proposed, treatment: file.deleted ? 'save' : 'reopen', reason: 'audit: caches are rebuilt, not saved' };
    }
    if (file.path.endsWith('.sqlite')) return { ...proposed, treatment: 'save', reason: 'audit: databases are always saved' };
    return undefined; // keep the decision so far
  },
  beforeCheckpoint(e) {
    audit('beforeCheckpoint', { name: e.name });
  },
  afterCheckpoint(e) {
    audit('afterCheckpoint', { generation: e.generation, resumed: e.resumed });
  },
  onRestart(e) {
    audit('onRestart', { generation: e.generation, plan: e.plan.length });
  },
};
