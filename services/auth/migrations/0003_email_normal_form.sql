-- Emails are stored in the normal form of argus_shared.emails: NFKC, the local part case-folded,
-- the domain IDNA-encoded (A-labels). The database cannot compute that form; the service does,
-- on every sign-up, login, reset, email change and invitation.
--
-- Existing rows: sign-up used to store `lower(trim(email))` with an ASCII domain. For a valid
-- lower-case ASCII address the new normal form is the stored text itself (NFKC, case folding and
-- IDNA are the identity there), so those rows, and the login throttle keyed on them, need no
-- change. Rows that can differ are those with a non-ASCII local part (say `straße@` is now
-- `strasse@`, a decomposed `é` is now precomposed) or whose syntax is now refused (`a..b@`, a
-- zero-width character, a special-use domain such as `.local`); their owners could no longer sign
-- in by typing the address. `python -m argus_auth normalise-emails` rewrites the first kind where
-- the normal form is free and lists the rest (by user id) for a person to resolve.
--
-- The old check compared with `lower()`, whose meaning outside ASCII depends on the database's
-- locale (and which disagrees with Unicode case folding, e.g. for Cherokee); the new one is
-- locale-independent: no ASCII capital letter. Rows already passed the stronger old check.
alter table users drop constraint email_is_lowercase;
alter table users add constraint email_has_no_ascii_capitals
    check (email = lower(email collate "C"));
