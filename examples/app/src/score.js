// A retention score: how engaged a customer is, from their event history,
// each event weighted by how recent it is. The reference app has no real
// event store, so the history is generated from the customer id (the same id
// always gives the same score). What matters for the stack is its shape: a
// request that costs CPU in proportion to the history's length and touches
// no database, like the scoring endpoints of a retention product - the load
// that makes the API's CPU the scaling metric (roles/autoscaler).
export const MAX_EVENTS = 2_000_000;
const HALF_LIFE_DAYS = 30;

export function retentionScore(customer, events) {
  // xorshift32 seeded by the customer id: deterministic and cheap.
  let state = (Number(customer) % 0x7fffffff) || 1;
  const decay = Math.LN2 / HALF_LIFE_DAYS;
  let weighted = 0;
  let total = 0;
  for (let i = 0; i < events; i += 1) {
    state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
    const ageDays = (state >>> 0) % 365;
    const value = ((state >>> 8) & 0xff) / 255;
    const weight = Math.exp(-decay * ageDays);
    weighted += weight * value;
    total += weight;
  }
  return total === 0 ? 0 : Math.round((weighted / total) * 1000) / 1000;
}
