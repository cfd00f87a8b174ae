// The message `fn` throws, or "no error": lets a test compare what several
// bad inputs say in one assertion.
export function errorOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return (err as Error).message;
  }
  return 'no error';
}
