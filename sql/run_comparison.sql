-- name: run_comparison
-- description: One row per training run (sozstore train / demo): pooled held-out channel AUROC and AUPRC against the clinicians' labels (and the true onset zone on generated cohorts) and patient-macro metrics at the validation threshold, each with its patient-bootstrap 95% interval (_lo, _hi); d_*: the paired difference to the comparator baseline (spike_rate) on the same folds, patients and resamples, with its interval; protocols patient-K-fold, leave-one-site-out, test-site:SITE and test-store:NAME (cross-cohort); leak-control runs are marked.
-- param: model VARCHAR = NULL -- restrict to one model
-- param: site VARCHAR = all -- metrics pooled over all sites ('all') or of one site
WITH m AS (
    SELECT run_id, reference, metric, value, ci_low, ci_high FROM metrics
    WHERE fold = 'all' AND site = CAST($site AS VARCHAR)
)
SELECT r.model, r.protocol, r.shuffle_scope AS shuffled, r.seed,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'auroc') AS auroc,
       max(ci_low) FILTER (WHERE reference = 'clinician' AND metric = 'auroc') AS auroc_lo,
       max(ci_high) FILTER (WHERE reference = 'clinician' AND metric = 'auroc') AS auroc_hi,
       max(value) FILTER (WHERE reference = 'truth' AND metric = 'auroc') AS auroc_truth,
       max(ci_low) FILTER (WHERE reference = 'truth' AND metric = 'auroc') AS auroc_truth_lo,
       max(ci_high) FILTER (WHERE reference = 'truth' AND metric = 'auroc') AS auroc_truth_hi,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'auprc') AS auprc,
       max(ci_low) FILTER (WHERE reference = 'clinician' AND metric = 'auprc') AS auprc_lo,
       max(ci_high) FILTER (WHERE reference = 'clinician' AND metric = 'auprc') AS auprc_hi,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'prevalence') AS prevalence,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'patient_auroc_mean')
         AS patient_auroc,
       max(ci_low) FILTER (WHERE reference = 'clinician' AND metric = 'patient_auroc_mean')
         AS patient_auroc_lo,
       max(ci_high) FILTER (WHERE reference = 'clinician' AND metric = 'patient_auroc_mean')
         AS patient_auroc_hi,
       max(value) FILTER (WHERE reference = 'truth' AND metric = 'patient_auroc_mean')
         AS patient_auroc_truth,
       max(ci_low) FILTER (WHERE reference = 'truth' AND metric = 'patient_auroc_mean')
         AS patient_auroc_truth_lo,
       max(ci_high) FILTER (WHERE reference = 'truth' AND metric = 'patient_auroc_mean')
         AS patient_auroc_truth_hi,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'recall_mean') AS recall,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'specificity_mean')
         AS specificity,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'precision_mean') AS precision,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'f1_mean') AS f1,
       max(ci_low) FILTER (WHERE reference = 'clinician' AND metric = 'f1_mean') AS f1_lo,
       max(ci_high) FILTER (WHERE reference = 'clinician' AND metric = 'f1_mean') AS f1_hi,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'f1_sd') AS f1_sd,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'n_patients') AS n_patients,
       max(r.comparator) AS comparator,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'diff_auroc') AS d_auroc,
       max(ci_low) FILTER (WHERE reference = 'clinician' AND metric = 'diff_auroc') AS d_auroc_lo,
       max(ci_high) FILTER (WHERE reference = 'clinician' AND metric = 'diff_auroc') AS d_auroc_hi,
       max(value) FILTER (WHERE reference = 'truth' AND metric = 'diff_auroc') AS d_auroc_truth,
       max(ci_low) FILTER (WHERE reference = 'truth' AND metric = 'diff_auroc')
         AS d_auroc_truth_lo,
       max(ci_high) FILTER (WHERE reference = 'truth' AND metric = 'diff_auroc')
         AS d_auroc_truth_hi,
       max(value) FILTER (WHERE reference = 'clinician' AND metric = 'diff_patient_auroc_mean')
         AS d_patient_auroc,
       max(ci_low) FILTER (WHERE reference = 'clinician' AND metric = 'diff_patient_auroc_mean')
         AS d_patient_auroc_lo,
       max(ci_high) FILTER (WHERE reference = 'clinician' AND metric = 'diff_patient_auroc_mean')
         AS d_patient_auroc_hi,
       max(value) FILTER (WHERE reference = 'truth' AND metric = 'diff_patient_auroc_mean')
         AS d_patient_auroc_truth,
       max(ci_low) FILTER (WHERE reference = 'truth' AND metric = 'diff_patient_auroc_mean')
         AS d_patient_auroc_truth_lo,
       max(ci_high) FILTER (WHERE reference = 'truth' AND metric = 'diff_patient_auroc_mean')
         AS d_patient_auroc_truth_hi,
       r.seconds, r.created_at, r.run_id
FROM runs r JOIN m USING (run_id)
WHERE CAST($model AS VARCHAR) IS NULL OR r.model = CAST($model AS VARCHAR)
GROUP BY r.model, r.protocol, r.shuffle_scope, r.seed, r.seconds, r.created_at, r.run_id
ORDER BY shuffled NULLS FIRST, r.protocol, auroc DESC
