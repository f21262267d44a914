import type { Member, Project, User } from '@floe/api';
import { createContext, useContext } from 'react';

/** Who is signed in, the projects they see, the one they work in and their role there. */
export interface Session {
  user: User;
  projects: Project[];
  project: string;
  /** The user's role in the current project; 'operator' for operators (they may do everything). */
  role: Member['role'] | 'operator' | 'none';
  setProject(name: string): void;
  signOut(): void;
}

export const SessionContext = createContext<Session | null>(null);

/** The session of the signed-in user (inside the app shell). */
export function useSession(): Session {
  const s = useContext(SessionContext);
  if (s === null) throw new Error('useSession outside the app shell');
  return s;
}

/** True when the role may change things (members, owners, operators); viewers only look. */
export function canWrite(role: Session['role']): boolean {
  return role === 'operator' || role === 'owner' || role === 'member';
}
