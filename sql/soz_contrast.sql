-- name: soz_contrast
-- description: SOZ versus non-SOZ contacts per site and feature: means, Cohen's d and the Mann-Whitney AUROC (pooled over the site's channels).
-- param: site VARCHAR = NULL -- restrict to one site
-- param: clip_s DOUBLE = 5.0 -- clip length the features were computed with (seconds)
WITH good AS (
    SELECT DISTINCT recording_id, channel FROM channels
    WHERE NOT bad AND type IN ('seeg', 'ecog')
),
per_channel AS (
    SELECT b.site, b.subject, b.channel,
           avg(ln(b.gamma)) AS log_gamma, avg(ln(b.ripple)) AS log_ripple,
           avg(b.line_length) AS line_length, avg(b.kurtosis) AS kurtosis
    FROM bandpower b JOIN good USING (recording_id, channel)
    WHERE b.valid GROUP BY ALL
),
rates AS (
    SELECT s.site, s.subject, s.channel,
           sum(s.spike_count) * 60.0 / (count(*) * CAST($clip_s AS DOUBLE)) AS spike_rate
    FROM spikes s JOIN good USING (recording_id, channel)
    WHERE s.valid GROUP BY ALL
),
hfo_rates AS (
    SELECT h.site, h.subject, h.channel, avg(h.ripple_rate_per_min) AS ripple_rate,
           avg(h.fast_ripple_rate_per_min) AS fast_ripple_rate
    FROM hfo h JOIN good USING (recording_id, channel)
    WHERE h.valid GROUP BY ALL
),
long AS (
    UNPIVOT (
        SELECT p.site, p.subject, p.channel, c.soz, p.log_gamma, p.log_ripple, p.line_length,
               p.kurtosis, r.spike_rate, h.ripple_rate, h.fast_ripple_rate
        FROM per_channel p
        JOIN contacts c USING (site, subject, channel)
        LEFT JOIN rates r USING (site, subject, channel)
        LEFT JOIN hfo_rates h USING (site, subject, channel)
        WHERE c.soz IS NOT NULL
    ) ON log_gamma, log_ripple, line_length, kurtosis, spike_rate, ripple_rate, fast_ripple_rate
    INTO NAME feature VALUE value
),
ranked AS (
    SELECT *, rank() OVER (PARTITION BY site, feature ORDER BY value) AS rnk
    FROM long WHERE value IS NOT NULL AND isfinite(value)
)
SELECT site, feature,
       count(*) FILTER (WHERE soz)      AS n_soz,
       count(*) FILTER (WHERE NOT soz)  AS n_other,
       avg(value) FILTER (WHERE soz)    AS mean_soz,
       avg(value) FILTER (WHERE NOT soz) AS mean_other,
       (avg(value) FILTER (WHERE soz) - avg(value) FILTER (WHERE NOT soz))
         / nullif(sqrt((var_samp(value) FILTER (WHERE soz) + var_samp(value) FILTER (WHERE NOT soz)) / 2), 0)
                                        AS cohens_d,
       (sum(rnk) FILTER (WHERE soz) - count(*) FILTER (WHERE soz) * (count(*) FILTER (WHERE soz) + 1) / 2.0)
         / nullif(count(*) FILTER (WHERE soz) * count(*) FILTER (WHERE NOT soz), 0)
                                        AS auroc
FROM ranked
WHERE CAST($site AS VARCHAR) IS NULL OR site = CAST($site AS VARCHAR)
GROUP BY site, feature
ORDER BY site, auroc DESC
