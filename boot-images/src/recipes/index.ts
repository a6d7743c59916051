// The recipes, in build order (the quick ones first), and lookup by recipe or image name.
import { guestRecipe } from "./guest.js";
import { hostRecipe } from "./host.js";
import { maintenanceRecipe } from "./maintenance.js";
import type { Recipe } from "./recipe.js";

export const RECIPES: readonly Recipe[] = [maintenanceRecipe, guestRecipe, hostRecipe];

/** The recipe named `name`, or the one producing the image `name`. */
export function findRecipe(name: string): Recipe | undefined {
  return RECIPES.find((r) => r.name === name || r.artifacts.includes(name));
}

export const knownNames = (): string[] =>
  RECIPES.flatMap((r) => [r.name, ...r.artifacts.filter((a) => a !== r.name)]);
