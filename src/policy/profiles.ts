/**
 * Rule profiles: the data plane judges each interface's traffic by one of
 * PS_MAX_PROFILES rule sets, so interfaces to which exactly the same rules
 * apply share one.
 */

/** Which profile each interface uses, and which rules each profile holds. */
export interface ProfileAssignment {
  /** profileOf[i]: profile of the i-th interface. */
  profileOf: number[];
  /** ruleSets[p]: indices of the rules in profile p, ascending. */
  ruleSets: number[][];
}

/**
 * Groups interfaces by the rules that apply to them. scopes[r] lists the
 * interfaces rule r is restricted to (undefined: every interface). Profiles
 * are numbered in order of first appearance in `interfaces`.
 */
export function assignProfiles(
  interfaces: readonly string[],
  scopes: readonly (readonly string[] | undefined)[],
): ProfileAssignment {
  const profileByRules = new Map<string, number>();
  const ruleSets: number[][] = [];
  const profileOf = interfaces.map((name) => {
    const rules: number[] = [];
    scopes.forEach((scope, rule) => {
      if (scope === undefined || scope.includes(name)) rules.push(rule);
    });
    const identity = rules.join(',');
    let profile = profileByRules.get(identity);
    if (profile === undefined) {
      profile = ruleSets.length;
      profileByRules.set(identity, profile);
      ruleSets.push(rules);
    }
    return profile;
  });
  return { profileOf, ruleSets };
}
