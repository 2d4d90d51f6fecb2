-- name: cohort_summary
-- description: Subjects, recordings, channel-hours, labelled SOZ contacts, bad channels and seizure onsets per site.
-- param: site VARCHAR = NULL -- restrict to one site
SELECT r.site,
       count(DISTINCT r.subject)                          AS subjects,
       count(DISTINCT r.recording_id)                     AS recordings,
       round(sum(r.duration_s * r.n_channels) / 3600, 2)  AS channel_hours,
       (SELECT count(*) FROM contacts c WHERE c.site = r.site AND c.soz)           AS soz_contacts,
       (SELECT count(*) FROM contacts c WHERE c.site = r.site AND c.conflict)      AS label_conflicts,
       (SELECT count(*) FROM channels c WHERE c.site = r.site AND c.bad)           AS bad_channels,
       (SELECT count(*) FROM events e WHERE e.site = r.site AND e.kind = 'onset')  AS seizure_onsets,
       (SELECT count(*) FROM subjects s WHERE s.site = r.site AND s.seizure_free)  AS seizure_free_subjects
FROM recordings r
WHERE CAST($site AS VARCHAR) IS NULL OR r.site = CAST($site AS VARCHAR)
GROUP BY r.site
ORDER BY r.site
