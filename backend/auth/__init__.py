"""Who may do what: users and roles in MongoDB, argon2 password hashes, signed access tokens, the
policy table and the server interceptor that enforces it, and AuthService (login, user admin)."""
