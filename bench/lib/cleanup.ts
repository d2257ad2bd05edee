/**
 * One place that undoes what the benchmark changed on the host: sysctl
 * values, pins, temp files, namespaces. Undo steps run in reverse order on a
 * normal end, on an exception, and on SIGINT/SIGTERM (synchronously, because
 * a signal handler cannot wait for promises).
 */
import { destroyAllTopologiesSync } from '../../test/helpers/net.js';

type Undo = { what: string; fn: () => void };
const undoStack: Undo[] = [];
let installed = false;

/** Register a synchronous undo step; returns a function that runs it now (once). */
export function onCleanup(what: string, fn: () => void): () => void {
  installHandlers();
  const entry: Undo = { what, fn };
  undoStack.push(entry);
  return () => {
    const i = undoStack.indexOf(entry);
    if (i < 0) return;
    undoStack.splice(i, 1);
    entry.fn();
  };
}

/** Run every registered undo step (newest first); a failing step is reported, not fatal. */
export function cleanupAll(): void {
  while (undoStack.length) {
    const step = undoStack.pop()!;
    try {
      step.fn();
    } catch (err) {
      console.error(`bench cleanup: ${step.what} failed: ${(err as Error).message}`);
    }
  }
  // Namespaces (and with them the veths, nft tables and qdiscs inside).
  destroyAllTopologiesSync();
}

function installHandlers(): void {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupAll);
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.on(sig, () => {
      console.error(`\nbench: ${sig}, cleaning up`);
      cleanupAll();
      process.exit(code);
    });
  }
}
