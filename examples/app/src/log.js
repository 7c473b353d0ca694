// Errors and lifecycle events as one JSON object per line on stdout, so
// journald keeps them intact and they can be shipped/parsed as is. Requests
// are not logged here: nginx already writes an access log.
let base = {};

export function setLogContext(ctx) {
  base = { ...base, ...ctx };
}

function errFields(err) {
  if (!err) return {};
  if (err instanceof Error) return { error: err.message, code: err.code, stack: err.stack };
  return { error: String(err) };
}

export function log(level, msg, fields = {}) {
  const { err, ...rest } = fields;
  const line = { ts: new Date().toISOString(), level, msg, ...base, ...rest, ...errFields(err) };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

export const info = (msg, fields) => log('info', msg, fields);
export const warn = (msg, fields) => log('warn', msg, fields);
export const error = (msg, fields) => log('error', msg, fields);
