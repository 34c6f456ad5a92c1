"""Who may see what: roles, sign-in, API tokens, kiosk links, the audit log, the broker's ACL.

- :mod:`.roles`: roles, permissions, the signed-in :class:`~.roles.Principal` and the
  :class:`~.roles.Scope` the read queries filter and mask by (pure, no Flask).
- :mod:`.masking`: applicants' names and phone numbers masked for roles that must not see them.
- :mod:`.policy`: which permission every API view, Dash callback and page needs.
- :mod:`.accounts`: users, password hashes, API tokens, kiosk links, audit rows (database).
- :mod:`.web`: the Flask side: sessions, sign-in page, CSRF, security headers, rate limit.
- :mod:`.mqtt_acl`: Mosquitto password file and ACL from the commune list.

Importing this package imports nothing else; each module is imported where it is used.
"""
