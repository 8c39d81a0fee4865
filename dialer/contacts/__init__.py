"""Contact lists: upload, normalization, staging and commit, error reports, scrubbing, exports.

Modules: `sniff` (encoding, delimiter, binary files), `columns` (header names and mapping files),
`phones` (E.164, line type, zones, jurisdiction), `rows` (one CSV record -> contact or errors),
`chunks` (record boundaries, parallel work units), `store` (Redis layout and the atomic commit),
`jobs` (RQ jobs and the functions the gateway calls), `report`, `scrub`, `export`.
Layout and formats: docs/contacts.md.
"""
