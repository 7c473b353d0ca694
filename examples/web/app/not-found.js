// Unknown paths (the items page renders its own 404).
export default function NotFound() {
  return (
    <main>
      <h1>Not found</h1>
      <p>
        Nothing here. <a href="/">Home</a>
      </p>
    </main>
  );
}
