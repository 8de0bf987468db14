"""Identity and authorization for every door of cityops: accounts and roles, sessions, API
tokens for machine clients, and the data classes each role may see. Imports only the kernel;
the dashboard, the planners' API and the OGC API all ask it (docs/security.md)."""
