	.file	"blink.c"
__SP_H__ = 0x3e
__SP_L__ = 0x3d
__SREG__ = 0x3f
__tmp_reg__ = 0
__zero_reg__ = 1
	.text
	.section	.text.startup,"ax",@progbits
.global	main
	.type	main, @function
main:
/* prologue: function */
/* frame size = 0 */
/* stack size = 0 */
.L__stack_usage = 0
	ldi r24,lo8(32)
	out 0x4,r24
.L5:
	ldi r30,lo8(msg.0)
	ldi r31,hi8(msg.0)
	ldi r24,lo8(-1)
	ldi r25,lo8(-1)
.L3:
	ld r18,Z+
	eor r24,r18
	ldi r18,lo8(8)
.L2:
	movw r20,r24
	lsr r21
	ror r20
	mov r19,r24
	movw r24,r20
	sbrs r19,0
	rjmp .L9
	ldi r19,lo8(1)
	eor r24,r19
	ldi r19,lo8(-96)
	eor r25,r19
.L9:
	subi r18,lo8(1)
	brne .L2
	ldi r18,hi8(msg.0+8)
	cpi r30,lo8(msg.0+8)
	cpc r31,r18
	brne .L3
	in r18,0x5
	andi r24,32
	eor r24,r18
	out 0x5,r24
	ldi r24,lo8(80)
	ldi r25,lo8(-61)
.L4:
/* #APP */
 ;  14 "/work/blink.c" 1
	nop
 ;  0 "" 2
/* #NOAPP */
	sbiw r24,1
	brne .L4
	rjmp .L5
	.size	main, .-main
	.section	.rodata
	.type	msg.0, @object
	.size	msg.0, 9
msg.0:
	.string	"wasijail"
	.ident	"GCC: (GNU) 15.2.0"
.global __do_copy_data
