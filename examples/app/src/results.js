// Durable job results: the worker's write to job_results, batched across the
// jobs it runs at the same time.
//
// Each job still waits for ITS row to be committed before the processor
// returns, so BullMQ only marks a job completed once its result is in
// Postgres, exactly as with one INSERT per job. What changes is the number
// of statements: while one batch is being written, the results of the other
// concurrent jobs queue up and go out together in one multi-row INSERT,
// i.e. one round trip through PgBouncer and one commit (one WAL flush with
// synchronous_commit on) for many jobs. Nothing is delayed on purpose: an
// idle worker writes a lone result at once (group commit, not a timer).
// bench/worker_drain.py measures the effect.

// unnest() turns two arrays into rows, so the SQL text is the same for any
// batch size (and carries no statement name: PgBouncer transaction mode).
// Upsert: a retried or re-run (stalled) job overwrites its earlier result.
const UPSERT = `INSERT INTO job_results (job_id, result, worker)
  SELECT id, result, $3 FROM unnest($1::text[], $2::jsonb[]) AS r(id, result)
  ON CONFLICT (job_id) DO UPDATE
    SET result = EXCLUDED.result, worker = EXCLUDED.worker, processed_at = now()`;

export class ResultWriter {
  /**
   * @param pool         pg Pool (through PgBouncer)
   * @param worker       value of job_results.worker
   * @param maxBatch     rows per INSERT at most
   * @param maxInFlight  batches being written at once; more overlap the
   *                     round trips, fewer make bigger batches
   */
  constructor(pool, { worker, maxBatch = 500, maxInFlight = 2 }) {
    this.pool = pool;
    this.worker = worker;
    this.maxBatch = maxBatch;
    this.maxInFlight = maxInFlight;
    this.pending = [];
    this.inFlight = 0;
    this.scheduled = false;
  }

  /** Resolves once the row of `jobId` is committed; rejects if it could not be written. */
  write(jobId, result) {
    return new Promise((resolve, reject) => {
      this.pending.push({ jobId: String(jobId), json: JSON.stringify(result), resolve, reject });
      // Jobs that finish in the same turn of the event loop share a batch.
      if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => {
          this.scheduled = false;
          this.#send();
        });
      }
    });
  }

  #send() {
    while (this.pending.length > 0 && this.inFlight < this.maxInFlight) {
      const batch = this.pending.splice(0, this.maxBatch);
      this.inFlight += 1;
      this.#flush(batch).finally(() => {
        this.inFlight -= 1;
        this.#send();
      });
    }
  }

  async #flush(batch) {
    try {
      await this.#insert(batch);
      for (const r of batch) r.resolve();
    } catch (err) {
      if (batch.length === 1) {
        batch[0].reject(err);
        return;
      }
      // One bad row (or the same job twice: ON CONFLICT cannot change a row
      // twice in one statement) must not fail its neighbours: write each on
      // its own, so that only the rows that really fail fail (and BullMQ
      // retries those jobs). When Postgres is down, they all fail anyway.
      await Promise.all(batch.map((r) => this.#insert([r]).then(r.resolve, r.reject)));
    }
  }

  #insert(rows) {
    return this.pool.query(UPSERT, [rows.map((r) => r.jobId), rows.map((r) => r.json), this.worker]);
  }
}
