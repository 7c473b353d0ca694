// The static page: prerendered at build (no data, no request-time API), so
// every instance serves the same HTML from the artifact. It names the
// build's fingerprinted assets under /_next/static/: the JS chunks, the CSS
// (globals.css, page.module.css) and the logo (imported, so it gets a hash).
import logo from './logo.svg';
import styles from './page.module.css';

export const dynamic = 'force-static';

export default function Home() {
  return (
    <main className={styles.main}>
      <header className={styles.header}>
        <img src={logo.src} width={logo.width} height={logo.height} alt="" />
        <h1>recete web</h1>
      </header>
      <p>
        The reference web tier of recete.stack: a Next.js server in front of the recete API. This page is
        static, rendered when the release was built.
      </p>
      <p>
        {/* A plain link, not next/link: the App Router would prefetch the
            server-rendered page (an API request per visit of this page). */}
        <a href="/items/1">Item 1</a>, rendered on the server from the API on every request.
      </p>
      <p className={styles.muted}>
        Release <code>{process.env.APP_VERSION}</code>
      </p>
    </main>
  );
}
