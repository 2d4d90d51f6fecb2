-- name: rate_ranking
-- description: Spike-rate and HFO-rate ranking of each patient's contacts (rank 1 = highest rate), with the clinicians' SOZ label beside it.
-- param: site VARCHAR = NULL -- restrict to one site
-- param: subject VARCHAR = NULL -- restrict to one subject
-- param: top BIGINT = 10 -- contacts per patient
-- param: clip_s DOUBLE = 5.0 -- clip length the features were computed with (seconds)
WITH good AS (
    SELECT DISTINCT recording_id, channel FROM channels
    WHERE NOT bad AND type IN ('seeg', 'ecog')
),
rates AS (
    SELECT s.site, s.subject, s.channel,
           sum(s.spike_count) * 60.0 / (count(*) * CAST($clip_s AS DOUBLE)) AS spike_rate_per_min
    FROM spikes s JOIN good USING (recording_id, channel)
    WHERE s.valid GROUP BY ALL
),
hfo_rates AS (
    SELECT h.site, h.subject, h.channel,
           avg(coalesce(h.ripple_rate_per_min, 0) + coalesce(h.fast_ripple_rate_per_min, 0))
             AS hfo_rate_per_min
    FROM hfo h JOIN good USING (recording_id, channel)
    WHERE h.valid GROUP BY ALL
),
ranked AS (
    SELECT r.site, r.subject, r.channel, c.soz, r.spike_rate_per_min, h.hfo_rate_per_min,
           rank() OVER (PARTITION BY r.site, r.subject ORDER BY r.spike_rate_per_min DESC) AS spike_rank,
           rank() OVER (PARTITION BY r.site, r.subject ORDER BY h.hfo_rate_per_min DESC NULLS LAST) AS hfo_rank
    FROM rates r
    LEFT JOIN hfo_rates h USING (site, subject, channel)
    LEFT JOIN contacts c USING (site, subject, channel)
)
SELECT * FROM ranked
WHERE (spike_rank <= CAST($top AS BIGINT) OR hfo_rank <= CAST($top AS BIGINT))
  AND (CAST($site AS VARCHAR) IS NULL OR site = CAST($site AS VARCHAR))
  AND (CAST($subject AS VARCHAR) IS NULL OR subject = CAST($subject AS VARCHAR))
ORDER BY site, subject, spike_rank
