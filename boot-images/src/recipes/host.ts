import type { Recipe } from "./recipe.js";
export const hostRecipe: Recipe = {
  name: "host-bookworm",
  artifacts: ["host-bookworm"],
  plan() {
    return Promise.reject(new Error("not yet"));
  },
};
