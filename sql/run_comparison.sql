-- name: run_comparison
-- description: One row per training run (sozstore train / demo): pooled held-out channel AUROC and AUPRC against the clinicians' labels (and the true onset zone on generated cohorts) and patient-macro metrics at the validation threshold; leak-control runs are marked.
-- param: model VARCHAR = NULL -- restrict to one model
-- param: site VARCHAR = all -- metrics pooled over all sites ('all') or of one site
WITH m AS (
    SELECT run_id, reference, metric, value FROM metrics
    WHERE fold = 'all' AND site = CAST($site AS VARCHAR)
)
SELECT r.model, r.protocol, r.shuffle_scope AS shuffled, r.seed,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'auroc') AS auroc,
       max(value) FILTER (WHERE reference = 'truth' AND metric = 'auroc') AS auroc_truth,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'auprc') AS auprc,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'prevalence') AS prevalence,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'patient_auroc_mean')
         AS patient_auroc,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'recall_mean') AS recall,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'specificity_mean')
         AS specificity,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'precision_mean') AS precision,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'f1_mean') AS f1,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'f1_sd') AS f1_sd,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'n_patients') AS n_patients,
       r.seconds, r.created_at, r.run_id
FROM runs r JOIN m USING (run_id)
WHERE CAST($model AS VARCHAR) IS NULL OR r.model = CAST($model AS VARCHAR)
GROUP BY ALL
ORDER BY shuffled NULLS FIRST, r.protocol, auroc DESC
