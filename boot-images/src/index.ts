// Library surface for other workspaces (the controller's image import): the manifest format
// and how to read the cache.
export {
  MANIFEST_SCHEMA,
  MANIFEST_SUFFIX,
  manifestFileName,
  parseManifest,
  readManifest,
  readManifestsIn,
  type ImageFormat,
  type ImageKind,
  type ImageManifest,
} from "./core/manifest.js";
export { listManifests } from "./cli/list.js";
export { computeInputKey, type KeyInputs } from "./core/key.js";
