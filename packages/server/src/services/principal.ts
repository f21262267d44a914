/** Who is asking: resolved from the bearer token. */
export interface Principal {
  /** Token id, or "system" / "agent:<host>" for internal callers. */
  readonly actor: string;
  readonly admin: boolean;
  /** Projects a non-admin may use. Ignored for admins. */
  readonly projects: ReadonlySet<string>;
}
