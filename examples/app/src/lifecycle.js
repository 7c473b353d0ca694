// Signal and crash handling shared by the API and the worker.
import * as log from './log.js';

/**
 * SIGTERM (systemd stop) and SIGINT (Ctrl+C) run `shutdown` once; a second
 * signal is ignored rather than cutting the drain short. If draining takes
 * longer than `timeoutMs` the process exits 1 so systemd sees the unclean stop
 * (keep TimeoutStopSec above SHUTDOWN_TIMEOUT_MS so this fires first).
 */
export function installProcessHandlers({ shutdown, timeoutMs }) {
  let started = false;
  const onSignal = (signal) => {
    if (started) {
      log.warn('shutdown already in progress', { signal });
      return;
    }
    started = true;
    setTimeout(() => {
      log.error('shutdown timed out, forcing exit', { timeout_ms: timeoutMs });
      process.exit(1);
    }, timeoutMs).unref();
    Promise.resolve()
      .then(() => shutdown(signal))
      .catch((err) => {
        log.error('shutdown failed', { err });
        process.exit(1);
      });
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  // An exception nobody caught leaves the process in an unknown state: log it
  // and exit, systemd restarts us. A stray rejected promise is only logged.
  process.on('uncaughtException', (err) => {
    log.error('uncaught exception', { err });
    process.exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    log.error('unhandled promise rejection', { err: reason });
  });
}
