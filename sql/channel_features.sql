-- name: channel_features
-- description: Per-channel feature aggregates over all clips of a subject (good SEEG/ECoG channels), joined to the subject-level SOZ and resection labels.
-- param: site VARCHAR = NULL -- restrict to one site
-- param: subject VARCHAR = NULL -- restrict to one subject
-- param: clip_s DOUBLE = 5.0 -- clip length the features were computed with (seconds)
WITH good AS (
    SELECT DISTINCT recording_id, channel FROM channels
    WHERE NOT bad AND type IN ('seeg', 'ecog')
),
bp AS (
    SELECT b.site, b.subject, b.channel,
           avg(ln(b.delta)) AS log_delta, avg(ln(b.theta)) AS log_theta,
           avg(ln(b.alpha)) AS log_alpha, avg(ln(b.beta)) AS log_beta,
           avg(ln(b.gamma)) AS log_gamma, avg(ln(b.ripple)) AS log_ripple,
           avg(ln(b.fast_ripple)) AS log_fast_ripple, avg(b.line_length) AS line_length,
           avg(b.kurtosis) AS kurtosis, count(*) FILTER (WHERE b.valid) AS valid_clips
    FROM bandpower b JOIN good g USING (recording_id, channel)
    WHERE b.valid
    GROUP BY ALL
),
sp AS (
    SELECT s.site, s.subject, s.channel,
           sum(s.spike_count) * 60.0 / (count(*) * CAST($clip_s AS DOUBLE)) AS spike_rate_per_min
    FROM spikes s JOIN good g USING (recording_id, channel)
    WHERE s.valid
    GROUP BY ALL
),
hf AS (
    SELECT h.site, h.subject, h.channel,
           avg(h.ripple_rate_per_min) AS ripple_rate_per_min,
           avg(h.fast_ripple_rate_per_min) AS fast_ripple_rate_per_min
    FROM hfo h JOIN good g USING (recording_id, channel)
    WHERE h.valid
    GROUP BY ALL
)
SELECT bp.site, bp.subject, bp.channel, c.electrode, c.contact, c.soz, c.resected, c.conflict,
       sp.spike_rate_per_min, hf.ripple_rate_per_min, hf.fast_ripple_rate_per_min,
       bp.* EXCLUDE (site, subject, channel)
FROM bp
LEFT JOIN sp USING (site, subject, channel)
LEFT JOIN hf USING (site, subject, channel)
LEFT JOIN contacts c USING (site, subject, channel)
WHERE (CAST($site AS VARCHAR) IS NULL OR bp.site = CAST($site AS VARCHAR))
  AND (CAST($subject AS VARCHAR) IS NULL OR bp.subject = CAST($subject AS VARCHAR))
ORDER BY bp.site, bp.subject, bp.channel
