/**
 * Loads the Loom packages from their sources in the child processes of the fault suite
 * (`node --import tsx --import ./sources.mjs …`): the suite then exercises the code of the
 * working tree, whether or not the packages' `dist` has been built.
 */
import { register } from 'node:module'

register('./sources-hooks.mjs', import.meta.url)
