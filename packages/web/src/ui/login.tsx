import type { User } from '@floe/api';
import { FloeApiError } from '@floe/client/browser';
import { useState } from 'react';
import { client, errorText } from '../api.js';

/** The sign-in form: username and password, then a TOTP code when the server asks for one. */
export function Login(props: { onSignedIn: (u: User) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [code, setCode] = useState('');
  const [needCode, setNeedCode] = useState(false);
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);
  return (
    <main className="login" id="main">
      <form
        aria-label="Sign in"
        onSubmit={(e) => {
          e.preventDefault();
          setBusy(true);
          setError(undefined);
          client.session
            .login({ username, password, ...(needCode ? { totp_code: code } : {}), session_name: 'web' })
            .then(
              (s) => props.onSignedIn(s.user),
              (err: unknown) => {
                if (err instanceof FloeApiError && err.code === 'totp_required') setNeedCode(true);
                else setError(errorText(err));
              },
            )
            .finally(() => setBusy(false));
        }}
      >
        <h1>floe</h1>
        <label>
          Username
          <input
            name="username"
            autoComplete="username"
            value={username}
            onChange={(e) => setUsername(e.target.value)}
            required
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete="current-password"
            value={password}
            onChange={(e) => setPassword(e.target.value)}
            required
          />
        </label>
        {needCode && (
          <label>
            Authentication code
            <input
              name="totp"
              inputMode="numeric"
              autoComplete="one-time-code"
              autoFocus
              value={code}
              onChange={(e) => setCode(e.target.value)}
              required
            />
          </label>
        )}
        {error !== undefined && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" disabled={busy}>
          Sign in
        </button>
      </form>
    </main>
  );
}
