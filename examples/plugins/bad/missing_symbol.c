/* Bad plugin for the host's tests: exports a misspelt entry point, not ldctq_denoiser_get_api. */
#include "ldctq_denoiser.h"

LDCTQ_DENOISER_EXPORT int ldctq_denoiser_get_apl(void);
LDCTQ_DENOISER_EXPORT int ldctq_denoiser_get_apl(void) { return 0; }
