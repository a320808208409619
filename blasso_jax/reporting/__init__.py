"""What finished runs become: tables (`report`, `evidence_tables`, `nlgp_tables`), the evidence of a run
(`evidence`), the docs' rendered tables (`rendered_docs`) and figures (`figures`, `scaling_figures`,
`nlgp_figures`, `frontier`, in one `style`), and experiments from their options to these outputs (`ladders`,
`nlgp_runs`; `nlgp_online_report`: the online setting's tables and figures). The top layer: may import every other."""
