/** The settings the child processes of the events test are given, read from their environment. */
export function env(name: string): string {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set`)
  return value
}
