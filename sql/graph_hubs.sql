-- name: graph_hubs
-- description: Graph hubs per patient: node strength (mean over clips of the sum of |r| to all other channels) from the adjacency table, ranked, with SOZ labels.
-- param: site VARCHAR = NULL -- restrict to one site
-- param: subject VARCHAR = NULL -- restrict to one subject
-- param: top BIGINT = 10 -- channels per patient
WITH edges AS (
    SELECT site, subject, recording_id, clip_start_s, channel_i AS channel, abs(r) AS w
    FROM adjacency WHERE isfinite(r)
      AND (CAST($site AS VARCHAR) IS NULL OR site = CAST($site AS VARCHAR))
      AND (CAST($subject AS VARCHAR) IS NULL OR subject = CAST($subject AS VARCHAR))
    UNION ALL
    SELECT site, subject, recording_id, clip_start_s, channel_j AS channel, abs(r) AS w
    FROM adjacency WHERE isfinite(r)
      AND (CAST($site AS VARCHAR) IS NULL OR site = CAST($site AS VARCHAR))
      AND (CAST($subject AS VARCHAR) IS NULL OR subject = CAST($subject AS VARCHAR))
),
strength AS (
    SELECT site, subject, channel, avg(s) AS node_strength
    FROM (SELECT site, subject, recording_id, clip_start_s, channel, sum(w) AS s
          FROM edges GROUP BY ALL)
    GROUP BY ALL
),
ranked AS (
    SELECT s.*, c.soz,
           rank() OVER (PARTITION BY s.site, s.subject ORDER BY s.node_strength DESC) AS hub_rank
    FROM strength s
    JOIN (SELECT DISTINCT site, subject, channel, type FROM channels
          WHERE NOT bad AND type IN ('seeg', 'ecog')) c0 USING (site, subject, channel)
    LEFT JOIN contacts c USING (site, subject, channel)
)
SELECT site, subject, channel, node_strength, hub_rank, soz
FROM ranked
WHERE hub_rank <= CAST($top AS BIGINT)
ORDER BY site, subject, hub_rank
