/*
 * config.h - the run configuration: an INI file (parsed with inih) plus
 * --set section.key=value overrides. Unknown sections, keys and layer types
 * are errors that name the file and line.
 *
 * Layers are sections named [layer.NAME], in file order; each type's keys are
 * parsed, checked and dumped by its file in src/layers/ (the table: layers.c):
 *   [layer.conv1]  type = conv2d, filters = 32, kernel = 3 (or 3x5), stride = 1 (or 1x2),
 *                  padding = valid|same|N|PHxPW, bias = true|false, activation = relu|none
 *   [layer.pool1]  type = maxpool, pool = 2 (or 2x2), stride = (default: pool)
 *   [layer.drop1]  type = dropout, rate = 0.25
 *   [layer.flat]   type = flatten
 *   [layer.fc1]    type = dense, units = 128, activation = relu|none
 *   [layer.r]      type = relu
 *   [layer.lr]     type = leaky_relu, slope = 0.01
 *   [layer.bn]     type = batchnorm (or batchnorm2d), momentum = 0.1, eps = 1e-5, affine = true|false
 *   [layer.ap]     type = avgpool, pool = 2, stride = (default: pool);  [layer.g] type = global_avgpool
 *   [layer.loss]   type = softmax_xent, label_smoothing = 0  (must be last; the layer before gives
 *                  the class count)
 *   [layer.sum]    type = add, inputs = a, b     (element-wise sum of 2 to 4 inputs of one shape)
 *   [layer.cat]    type = concat, inputs = a, b  (channels of inputs of one HxW, in that order)
 * Any layer may name its inputs: "inputs = a, b" (earlier layers, or "input" for the network's
 * input; default: the previous layer). A name with "activation = relu" means its relu's output.
 * Layer names hold letters, digits, '_', '-' and '.'.
 *
 * Repeated blocks (config_block.c): sections [block.T.NAME] are the layers NAME of a template
 * T (written like [layer.NAME] sections, values may use ${VAR}, "when = ${VAR}" drops the layer
 * when false, "inputs" may name the template's own layers and "@in", the block's input). A
 * section [repeat.R] with "block = T", "count = N" and variables "VAR = value" (instance K's own
 * value: "VAR.K = value") puts N copies of T there, their layers named R.K.NAME (torchvision's
 * layer2.0.conv1). The resolved config lists the generated [layer.*] sections.
 */
#ifndef SPOTTRAIN_CONFIG_H
#define SPOTTRAIN_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "optim.h"
#include "spot.h"

/* Layers of a network after expansion (ResNet-20 with BatchNorm has about 75). */
#define CONFIG_MAX_LAYERS 128
/* At most this many inputs per layer ("inputs = a, b"). */
#define LAYER_MAX_IN 4
#define CONFIG_PATH_MAX 1024

typedef enum { CKPT_SCOPE_SHARED = 0, CKPT_SCOPE_NODE } ckpt_scope;
typedef enum { DIST_AUTO = 0, DIST_MPI, DIST_NCCL } dist_backend_kind;
typedef enum { DEVICE_AUTO = 0, DEVICE_CPU, DEVICE_CUDA } device_kind;
/* run.cpu_isa: the CPU kernels (src/kernels/); CPU_ISA_x = KERN_ISA_x + 1. */
typedef enum { CPU_ISA_AUTO = 0, CPU_ISA_PORTABLE, CPU_ISA_AVX2, CPU_ISA_AVX512 } cpu_isa_kind;

/* Room for one layer type's own parameters (src/layers/<type>.c). */
#define LAYER_PARAMS_BYTES 64

struct layer_type;

typedef struct layer_spec {
	const struct layer_type *type;   /* src/layers/layers.c; NULL until "type = ..." */
	char name[48];                   /* NAME of [layer.NAME]; an activation adds "NAME.relu" */
	bool relu_after;                 /* activation = relu: a relu layer follows (types that allow it) */
	int n_inputs;                    /* "inputs = a, b": how many; 0 = the previous layer */
	int16_t inputs[LAYER_MAX_IN];    /* their indices in config.layers (earlier ones), -1 = the input */
	union {
		double align;
		unsigned char bytes[LAYER_PARAMS_BYTES];
	} params;                        /* the type's keys, as its file lays them out */
} layer_spec;

typedef struct config {
	char source[CONFIG_PATH_MAX];       /* the file it came from */
	/* [model] */
	int in_c, in_h, in_w;               /* input = CxHxW, default 1x28x28 */
	int n_layers;
	layer_spec layers[CONFIG_MAX_LAYERS];
	/* [data] */
	char data_dir[CONFIG_PATH_MAX];     /* default /usr/share/datasets/fashion-mnist */
	char data_url[CONFIG_PATH_MAX];     /* base URL for missing files ("" = none) */
	char data_sha256[4][65];            /* train-images, train-labels, t10k-images, t10k-labels */
	char data_archive_digest[80];       /* data.url an archive: "sha256:HEX" | "md5:HEX" ("": published) */
	int data_format;                    /* data.h data_format: auto | idx | cifar10 | cifar100 | hdf5 */
	int data_label;                     /* data.h data_label_kind: fine | coarse (CIFAR-100) */
	int aug_crop_pad;                   /* random crop after padding by this many pixels (0: none) */
	int aug_pad_mode;                   /* 0 zero, 1 reflect */
	bool aug_flip;                      /* random horizontal flip */
	int aug_cutout;                     /* side of a random zeroed square (0: none) */
	char data_mean[96], data_std[96];   /* per-channel normalisation "m0,m1,m2" ("": none) */
	bool data_prefetch;                 /* decode the next step's shards in the background */
	double data_cache_mb;               /* > 0: stream an HDF5 split larger than this through a cache this size */
	bool data_stream;                   /* stream HDF5 splits whatever their size (cache: data_cache_mb or 256) */
	/* [train] */
	int epochs;                         /* default 12 */
	int global_batch;                   /* B, default 128 */
	optim_config optim;                 /* optimizer, lr, schedule ... */
	uint32_t seed;                      /* default 1 */
	long max_steps;                     /* 0 = no limit */
	bool eval_each_epoch;               /* default true */
	/* [checkpoint] */
	int ckpt_every_steps;               /* 0 = only epoch ends, stops and final; default 200 */
	int ckpt_keep;                      /* keep the last K periodic checkpoints, default 3 */
	bool ckpt_keep_epoch_ends;          /* default true */
	bool ckpt_async;                    /* default true */
	ckpt_scope ckpt_scope;              /* shared (rank 0 writes) | node (local rank 0 writes) */
	/* [run] */
	char run_dir[CONFIG_PATH_MAX];      /* default runs/default */
	int log_every;                      /* default 10 */
	int min_step_ms;                    /* pace: a step lasts at least this long (simulations, demos) */
	int threads;                        /* 0 = cores available to the rank */
	device_kind device;                 /* auto | cpu | cuda */
	cpu_isa_kind cpu_isa;               /* auto (the best this CPU runs) | portable | avx2 | avx512; the
					       environment's SPOTTRAIN_CPU_ISA wins; one the CPU lacks: exit 64 */
	double progress_timeout_s;          /* heartbeat interval contract for the launcher (info) */
	/* [spot] */
	spot_config spot;
	/* [dist] */
	dist_backend_kind dist_backend;
	double collective_timeout_s;        /* default 300 */
	int shard_samples;                  /* S: samples per gradient shard (grad.h), default 16 */
	/* Plain keys the user set (file or --set), one bit per row of config.c's key table:
	 * another key's defaults (train.optimizer's) never overwrite them. */
	uint64_t explicit_keys;
} config;

/* Defaults for everything; no layers. */
void config_defaults(config *c);

/*
 * Parse an INI file into c (which should hold defaults). On error prints
 * "FILE:LINE: what" through log_error and returns EXIT_USAGE (64), or
 * EXIT_NOINPUT (66) if the file cannot be read.
 */
int config_load_file(config *c, const char *path);
/* The most bytes a config file may have, and the longest line (inih's buffer, less newline and NUL). */
#define CONFIG_TEXT_MAX (1 << 20)
#define CONFIG_LINE_MAX 198
/*
 * config_text.c: read a config file whole (NUL-terminated; embedded NULs kept for the
 * check), and check text before it is parsed: no NUL byte, no line longer than the INI
 * parser keeps whole, no section twice. Errors name the file and line; EXIT_USAGE (64).
 */
int config_read_text(const char *path, char **out, size_t *len);
int config_check_text(const char *text, size_t len, const char *name);
/* Parse INI text (e.g. the config stored in a checkpoint); name is used in messages. */
int config_load_string(config *c, const char *text, const char *name);
/* Apply one override "section.key=value" (layer keys: "layer.NAME.key=value"). */
int config_set(config *c, const char *assignment);
/* Check cross-field constraints (batch > 0, last layer softmax_xent, ...). Returns 0 or 64. */
int config_validate(const config *c);

/* A finite number, all of s but trailing blanks (strtod syntax); false otherwise. */
bool config_parse_number(const char *s, double *out);

/* The resolved config as canonical INI text (malloc'ed; parseable by config_load_string). */
char *config_dump(const config *c);

/* ---- the command line's share of the config (config_args.c) ---- */

#define MAX_SETS 64

/* What main.c parsed from the command line of train, eval and bench. */
typedef struct run_args {
	const char *config_path;
	const char *sets[MAX_SETS];  /* --set section.key=value, in order */
	int n_sets;
	const char *data_dir;        /* --data-dir */
	const char *run_dir;         /* --run-dir */
	const char *init_from;       /* --init-from FILE (weights only) */
	const char *ckpt;            /* eval --ckpt FILE */
	long epochs;                 /* --epochs (0: config) */
	long max_steps;              /* --max-steps (0: config) */
	int threads;                 /* --threads (-1: config) */
	long seed;                   /* --seed (-1: config) */
	int steps;                   /* bench --steps */
	int warmup;                  /* bench --warmup */
	bool bench_data;             /* bench --data: steps over data.dir's training set, not synthetic pixels */
	device_kind device;          /* --device */
	bool device_given;
	bool verbose;
} run_args;

/* The --set overrides in order, then the flags (--data-dir, --epochs, ...), then config_validate.
 * c already holds the file's (or a checkpoint's) config. Returns 0 or an exit code. */
int config_apply_args(const run_args *a, config *c);
/* Defaults, the --config file (if any), then config_apply_args. Returns 0 or an exit code. */
int config_load_run(const run_args *a, config *c);

#endif
