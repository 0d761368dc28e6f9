// Boots Pyodide from our own origin, installs the wheels the server lists, imports pysync.
// Nothing is fetched from any other origin: the runtime, the wheels and pysync are ours.
import { loadPyodide } from "/pyodide/pyodide.mjs";

const wheelURL = (name) => new URL(`/wheels/${name}`, location.href).href;

export async function boot({ onProgress = () => {} } = {}) {
  const started = performance.now();
  onProgress("loading the Python runtime");
  const pyodide = await loadPyodide({ indexURL: "/pyodide/" });
  const response = await fetch("/wheels/manifest.json");
  if (!response.ok) throw new Error(`wheel manifest: HTTP ${response.status}`);
  const { wheels } = await response.json();
  const [micropipWheel, ...others] = wheels;
  if (!micropipWheel?.startsWith("micropip-")) throw new Error("the wheel manifest has no micropip");
  onProgress("installing packages");
  await pyodide.loadPackage(wheelURL(micropipWheel));
  const micropip = pyodide.pyimport("micropip");
  // deps=False: every dependency is pinned and listed, so micropip never asks an index.
  await micropip.install.callKwargs(others.map(wheelURL), { deps: false });
  micropip.destroy();
  onProgress("importing pysync");
  pyodide.pyimport("pysync").destroy();
  onProgress(`ready in ${Math.round(performance.now() - started)} ms`);
  return pyodide;
}
