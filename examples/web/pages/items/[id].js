// GET /items/:id, rendered on the server on every request from the API's
// GET /items/:id.
//
// A Pages Router page (getServerSideProps), while the rest of the app uses
// the App Router: only here does Next.js 15 let a server-rendered page choose
// its status and headers. The App Router answers 500 for any error a page
// throws (404/401/403 only through notFound() and friends), and a server
// component cannot set response headers, so neither "502 when the API is
// unreachable" nor a Cache-Control that depends on the outcome would be
// possible there.
import Head from 'next/head';
import { ITEM_ID, fetchItem, forwardedFor } from '../../lib/api.js';
import { VERSION, instance } from '../../lib/config.js';
import styles from '../../styles/item.module.css';

// An item page is the same for every visitor (no cookie, no login), so a
// shared cache (the CDN in front of the load balancer) may keep it for 5 s
// and serve it stale for 30 s more while it fetches a fresh copy: a burst of
// views of one item costs the API one read per 5 s. After a PUT the page may
// show the old version that long. Browsers do not store it (s-maxage is for
// shared caches only; no max-age, no Last-Modified).
export const ITEM_CACHE_CONTROL = 'public, s-maxage=5, stale-while-revalidate=30';
// A 404 or a 502 is never stored: an item created a moment later must show
// (the API's item cache never caches a miss either), and an API outage must
// not outlive itself in a cache.
export const ERROR_CACHE_CONTROL = 'private, no-store';

export async function getServerSideProps({ params, req, res }) {
  const id = String(params.id);
  const web = { instance: instance(), version: VERSION };
  const answer = (status, props) => {
    res.statusCode = status;
    res.setHeader('Cache-Control', status === 200 ? ITEM_CACHE_CONTROL : ERROR_CACHE_CONTROL);
    return { props: { id, web, ...props } };
  };
  if (!ITEM_ID.test(id)) return answer(404, { view: 'not_found', api: null });

  const r = await fetchItem(id, { forwardedFor: forwardedFor(req) });
  if (r.kind === 'ok') return answer(200, { view: 'item', item: r.item, api: r.api });
  if (r.kind === 'not_found') return answer(404, { view: 'not_found', api: r.api });
  return answer(502, { view: 'unavailable', reason: r.reason, api: r.api ?? null });
}

function Fact({ label, children }) {
  return (
    <>
      <dt>{label}</dt>
      <dd>{children ?? '—'}</dd>
    </>
  );
}

function Footer({ web, api }) {
  return (
    <p className={styles.footer}>
      Rendered by web instance <code data-testid="web-instance">{web.instance}</code> (release {web.version})
      {api?.instance ? (
        <>
          {' '}
          from API instance <code data-testid="api-instance">{api.instance}</code>
          {api.version ? ` (release ${api.version}${api.cache ? `, cache ${api.cache}` : ''})` : ''}
        </>
      ) : null}
      . <a href="/">Home</a>
    </p>
  );
}

export default function ItemPage({ view, id, item, reason, web, api }) {
  if (view === 'not_found') {
    return (
      <main className={styles.main}>
        <Head>
          <title>{`Item ${id} not found - recete web`}</title>
        </Head>
        <h1>Item not found</h1>
        <p>There is no item {id}.</p>
        <Footer web={web} api={api} />
      </main>
    );
  }
  if (view === 'unavailable') {
    return (
      <main className={styles.main}>
        <Head>
          <title>API unavailable - recete web</title>
        </Head>
        <div className={styles.error}>
          <h1>The API is unavailable</h1>
          <p>
            Item {id} cannot be shown right now: <span data-testid="reason">{reason}</span>.
          </p>
          <p>
            <a href={`/items/${id}`}>Try again</a> in a moment.
          </p>
        </div>
        <Footer web={web} api={api} />
      </main>
    );
  }
  return (
    <main className={styles.main}>
      <Head>
        <title>{`${item.name} - recete web`}</title>
      </Head>
      <h1 data-testid="name">{item.name}</h1>
      <dl className={styles.facts}>
        <Fact label="id">{item.id}</Fact>
        <Fact label="version">
          <span data-testid="version">{item.version}</span>
        </Fact>
        <Fact label="created by">{item.created_by}</Fact>
        <Fact label="created at">{item.created_at}</Fact>
        <Fact label="updated at">{item.updated_at}</Fact>
      </dl>
      {item.payload ? <pre className={styles.payload}>{JSON.stringify(item.payload, null, 2)}</pre> : null}
      <Footer web={web} api={api} />
    </main>
  );
}
