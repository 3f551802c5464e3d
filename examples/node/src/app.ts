import type { Loom } from '@loom/core'
import { loomApp } from '@loom/hono'
import { Hono } from 'hono'

/**
 * An existing service's Hono app, with Loom's HTTP API mounted under `/api`. The service
 * keeps its own routes; Loom answers everything under `/api` (JSON 404 included).
 */
export function createServiceApp(options: { loom: Loom; token?: string }) {
  return new Hono()
    .get('/', (c) => c.text('billing-service: up'))
    .get('/version', (c) => c.json({ service: 'billing-service', version: '1.4.2' }))
    .route('/api', loomApp(options.loom, { ...(options.token ? { token: options.token } : {}) }))
}
