// Child process bookkeeping for the tests: every process we start is tracked
// by PID and killed by PID at the end (and, as a last resort, when the test
// process exits), never by name.
import { spawn } from 'node:child_process';
import { once } from 'node:events';

const live = new Set();

process.on('exit', () => {
  // Synchronous last resort (a failed before() hook, an assertion that
  // skipped after()): SIGKILL whatever is still running. SIGKILL also ends a
  // process we SIGSTOPped.
  for (const p of live) {
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export class Proc {
  /**
   * @param name  label for messages
   * @param cmd   executable
   * @param args  arguments
   * @param opts  spawn options (env, cwd, uid, gid)
   */
  constructor(name, cmd, args, opts = {}) {
    this.name = name;
    this.output = '';
    this.exitCode = undefined;
    this.signal = undefined;
    this.child = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    this.pid = this.child.pid;
    if (this.pid === undefined) throw new Error(`${name}: could not start ${cmd}`);
    live.add(this);
    this.waiters = [];
    const onData = (buf) => {
      this.output += buf.toString();
      // Keep memory bounded for chatty processes.
      if (this.output.length > 2_000_000) this.output = this.output.slice(-1_000_000);
      this.waiters = this.waiters.filter((w) => !w.check());
    };
    this.child.stdout.on('data', onData);
    this.child.stderr.on('data', onData);
    this.exited = once(this.child, 'exit').then(([code, signal]) => {
      this.exitCode = code;
      this.signal = signal;
      live.delete(this);
      for (const w of this.waiters) {
        w.fail(new Error(`${name} exited (code ${code}, signal ${signal}) before: ${w.what}\n${this.tail()}`));
      }
      this.waiters = [];
      return { code, signal };
    });
  }

  get running() {
    return this.exitCode === undefined && this.signal === undefined;
  }

  /** Resolve when the combined output matches `re`. */
  waitForOutput(re, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      let timer;
      const w = {
        what: String(re),
        check: () => {
          const m = re.exec(this.output);
          if (m) {
            clearTimeout(timer);
            resolve(m);
            return true;
          }
          return false;
        },
        fail: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      if (w.check()) return;
      if (!this.running) return reject(new Error(`${this.name} is not running; wanted ${re}\n${this.tail()}`));
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${re}\n${this.tail()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  signalProc(sig) {
    if (this.running) process.kill(this.pid, sig);
  }

  /** Resolve with {code, signal} when the process exits, or reject after timeoutMs. */
  async waitForExit(timeoutMs = 10000) {
    let timer;
    const timeout = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${this.name} did not exit within ${timeoutMs} ms\n${this.tail()}`)), timeoutMs);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Send `sig`, wait up to timeoutMs, then SIGKILL. Never throws. */
  async stop(sig = 'SIGTERM', timeoutMs = 5000) {
    if (!this.running) return this.exited;
    try {
      process.kill(this.pid, 'SIGCONT'); // in case a test left it paused
      process.kill(this.pid, sig);
    } catch {
      // exited meanwhile
    }
    try {
      return await this.waitForExit(timeoutMs);
    } catch {
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {
        // gone
      }
      return this.exited;
    }
  }

  tail(n = 3000) {
    return `--- last output of ${this.name} (pid ${this.pid}) ---\n${this.output.slice(-n)}`;
  }
}

/** PIDs of processes started by this test process and still running. */
export function livePids() {
  return [...live].map((p) => p.pid);
}
