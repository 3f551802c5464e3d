/**
 * @loom/example-worker — the app-chart migration, a complete Loom worker built on
 * `@loom/worker`. It discovers Argo CD applications still on the shared `generic-app`
 * Helm chart in a GitOps repository (a local git repository created from fixture files),
 * gives each app a chart of its own and switches every environment to it, one "pull
 * request" (branch) per step, each completed when it is merged. Dry runs show the real
 * diffs. `createExampleWorker` hosts it in any process; `bin.ts` runs it standalone.
 */
export { createExampleWorker, FIXTURES_DIR, type ExampleWorker, type ExampleWorkerOptions } from './example-worker'
export {
  appChartMigration,
  discoverApps,
  switchApplication,
  appChartFiles,
  branchOf,
  GENERIC_CHART,
  MIGRATION_ID,
  type AppChartOptions,
} from './app-chart'
export { openGitOpsRepo, MAIN, type GitOpsRepo } from './gitops'
export { pullRequests, type PullRequests, type OpenPullRequest, type PullRequestsOptions } from './pull-requests'
