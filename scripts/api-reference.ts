/**
 * Writes the HTTP API reference of docs/reference/ from the OpenAPI document that
 * `loomApp` serves at `/openapi.json`, so the reference cannot drift from the code.
 *
 *   npx tsx scripts/api-reference.ts           # write docs/reference/http-api.md and openapi.json
 *   npx tsx scripts/api-reference.ts --check   # exit 1 when the checked-in files are stale
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { renderReference } from './api-reference-render'

const dir = fileURLToPath(new URL('../docs/reference/', import.meta.url))
const { markdown, json } = renderReference()
const files = { [`${dir}http-api.md`]: markdown, [`${dir}openapi.json`]: json }

if (process.argv.includes('--check')) {
  const stale = Object.entries(files).filter(([file, text]) => {
    try {
      return readFileSync(file, 'utf8') !== text
    } catch {
      return true
    }
  })
  for (const [file] of stale) console.error(`stale: ${file} (run npx tsx scripts/api-reference.ts)`)
  process.exit(stale.length ? 1 : 0)
}
for (const [file, text] of Object.entries(files)) writeFileSync(file, text)
console.log(`wrote ${Object.keys(files).join(', ')}`)
