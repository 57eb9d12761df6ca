/* Bad plugin for the host's tests: its table says ABI major 2 (and would crash if called). */
#include "ldctq_denoiser.h"

static const ldctq_denoiser_api API = {
    LDCTQ_DENOISER_ABI_MAJOR + 1, 0, sizeof(ldctq_denoiser_api), 0, "wrong_abi", "2.0.0", NULL, NULL, NULL,
};

LDCTQ_DENOISER_EXPORT const ldctq_denoiser_api *ldctq_denoiser_get_api(uint32_t host_abi_major) {
    (void)host_abi_major;
    return &API;
}
