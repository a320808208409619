"""What finished runs become: tables (`report`, `evidence_tables`, `nlgp_tables`), the evidence of a run
(`evidence`), the docs' rendered tables (`rendered_docs`) and figures (`figures`, `scaling_figures`,
`nlgp_figures`, `frontier`, in one `style`), and experiments from their options to these outputs (`ladders`; the
NLGP benchmark's arms, cells, λ selection and records in `nlgp_grid`; Ingrosso & Goldt's online setting in
`nlgp_online_runs`, its tables and figures in `nlgp_online_report`). The top layer: may import every other."""
