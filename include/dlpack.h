/*
 * dlpack.h: the DLPack v1.1 tensor structs (https://github.com/dmlc/dlpack), written for ldctq
 * from the public DLPack specification. Only the C data structures are declared; layouts and
 * enum values are those of the upstream header, and the include guard is the upstream one, so
 * that including the upstream (or PyTorch's ATen) dlpack.h first is equivalent.
 *
 * Copyright 2017 by Contributors (DLPack specification)
 *
 * Licensed under the Apache License, Version 2.0 (the "License");
 * you may not use this file except in compliance with the License.
 * You may obtain a copy of the License at
 *
 *     http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS,
 * WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and
 * limitations under the License.
 */
#ifndef DLPACK_DLPACK_H_
#define DLPACK_DLPACK_H_

#ifdef __cplusplus
#define DLPACK_EXTERN_C extern "C"
#else
#define DLPACK_EXTERN_C
#endif

/* The current major version of DLPack. */
#define DLPACK_MAJOR_VERSION 1
/* The current minor version of DLPack. */
#define DLPACK_MINOR_VERSION 1

#ifdef _WIN32
#ifdef DLPACK_EXPORTS
#define DLPACK_DLL __declspec(dllexport)
#else
#define DLPACK_DLL __declspec(dllimport)
#endif
#else
#define DLPACK_DLL
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The DLPack version: a major change breaks the ABI, a minor one only adds. */
typedef struct {
  uint32_t major;
  uint32_t minor;
} DLPackVersion;

/* The device type in DLDevice. */
#ifdef __cplusplus
typedef enum : int32_t {
#else
typedef enum {
#endif
  /* CPU device */
  kDLCPU = 1,
  /* CUDA GPU device */
  kDLCUDA = 2,
  /* Pinned CUDA CPU memory by cudaMallocHost */
  kDLCUDAHost = 3,
  /* OpenCL devices */
  kDLOpenCL = 4,
  /* Vulkan buffer for next generation graphics */
  kDLVulkan = 7,
  /* Metal for Apple GPU */
  kDLMetal = 8,
  /* Verilog simulator buffer */
  kDLVPI = 9,
  /* ROCm GPUs for AMD GPUs */
  kDLROCM = 10,
  /* Pinned ROCm CPU memory allocated by hipMallocHost */
  kDLROCMHost = 11,
  /* Reserved extension device type, used for quickly testing extension devices */
  kDLExtDev = 12,
  /* CUDA managed/unified memory allocated by cudaMallocManaged */
  kDLCUDAManaged = 13,
  /* Unified shared memory allocated on a oneAPI non-partitioned device */
  kDLOneAPI = 14,
  /* GPU support for next generation WebGPU standard */
  kDLWebGPU = 15,
  /* Qualcomm Hexagon DSP */
  kDLHexagon = 16,
  /* Microsoft MAIA devices */
  kDLMAIA = 17
} DLDeviceType;

/* A device: type and index (the CUDA device number, 0 for the CPU). */
typedef struct {
  DLDeviceType device_type;
  int32_t device_id;
} DLDevice;

/* The type code options of DLDataType. */
typedef enum {
  /* signed integer */
  kDLInt = 0U,
  /* unsigned integer */
  kDLUInt = 1U,
  /* IEEE floating point */
  kDLFloat = 2U,
  /* Opaque handle type, reserved for testing purposes */
  kDLOpaqueHandle = 3U,
  /* bfloat16 */
  kDLBfloat = 4U,
  /* complex number (C/C++/Python layout: compact struct per complex number) */
  kDLComplex = 5U,
  /* boolean */
  kDLBool = 6U,
  /* FP8 data types */
  kDLFloat8_e3m4 = 7U,
  kDLFloat8_e4m3 = 8U,
  kDLFloat8_e4m3b11fnuz = 9U,
  kDLFloat8_e4m3fn = 10U,
  kDLFloat8_e4m3fnuz = 11U,
  kDLFloat8_e5m2 = 12U,
  kDLFloat8_e5m2fnuz = 13U,
  kDLFloat8_e8m0fnu = 14U,
  /* FP6 data types (bits = 6) */
  kDLFloat6_e2m3fn = 15U,
  kDLFloat6_e3m2fn = 16U,
  /* FP4 data types (bits = 4) */
  kDLFloat4_e2m1fn = 17U
} DLDataTypeCode;

/*
 * The data type of a tensor: e.g. float32 is {kDLFloat, 32, 1}, bfloat16 is {kDLBfloat, 16, 1},
 * float4 (vector of 4 float32) is {kDLFloat, 32, 4}.
 */
typedef struct {
  /* Type code of the base type: a DLDataTypeCode, stored as uint8_t for bandwidth. */
  uint8_t code;
  /* Number of bits, e.g. 8, 16, 32. */
  uint8_t bits;
  /* Number of lanes in the type, used for vector types. */
  uint16_t lanes;
} DLDataType;

/* A plain tensor object that does not manage memory. */
typedef struct {
  /*
   * The data pointer: an opaque handle for OpenCL, a device address for CUDA, a host address
   * for the CPU. The element at index 0 is at (char*)data + byte_offset.
   */
  void* data;
  /* The device of the tensor */
  DLDevice device;
  /* Number of dimensions */
  int32_t ndim;
  /* The data type of the pointer */
  DLDataType dtype;
  /* The shape of the tensor (ndim values) */
  int64_t* shape;
  /* Strides of the tensor in number of elements, not bytes; NULL means compact row-major. */
  int64_t* strides;
  /* The offset in bytes to the beginning pointer to data */
  uint64_t byte_offset;
} DLTensor;

/*
 * Legacy (pre-1.0) managed tensor: a DLTensor plus the deleter that its consumer calls when done.
 */
typedef struct DLManagedTensor {
  /* DLTensor which is being memory managed */
  DLTensor dl_tensor;
  /* The context of the original host framework, used by the deleter. May be NULL. */
  void* manager_ctx;
  /* Destructor: called by the consumer to release the tensor. May be NULL. */
  void (*deleter)(struct DLManagedTensor* self);
} DLManagedTensor;

/* The tensor is read only. */
#define DLPACK_FLAG_BITMASK_READ_ONLY (1UL << 0UL)

/* The producer copied the tensor memory (no aliasing with the producer's data). */
#define DLPACK_FLAG_BITMASK_IS_COPIED (1UL << 1UL)

/* Sub-byte elements (bits < 8) are padded to a full byte each. */
#define DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED (1UL << 2UL)

/*
 * Versioned managed tensor (DLPack >= 1.0). A consumer that sees a major version it does not
 * know must call the deleter and must not read any other field.
 */
typedef struct DLManagedTensorVersioned {
  /* The API and ABI version of this managed tensor. */
  DLPackVersion version;
  /* The context of the original host framework, used by the deleter. May be NULL. */
  void* manager_ctx;
  /* Destructor: called by the consumer to release the tensor. May be NULL. */
  void (*deleter)(struct DLManagedTensorVersioned* self);
  /* Additional bitmask flags (DLPACK_FLAG_BITMASK_*). */
  uint64_t flags;
  /* DLTensor which is being memory managed */
  DLTensor dl_tensor;
} DLManagedTensorVersioned;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DLPACK_DLPACK_H_ */
